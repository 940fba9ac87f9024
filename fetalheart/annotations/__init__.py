"""LabelMe -> COCO: read every LabelMe-compatible variant (``labelme``), write COCO instances with RLE or
polygons (``coco``, ``rle``), split without leaking neighbouring frames (``split``: grouped splits and K
folds), the conversion stage itself (``convert``) and its human-readable report (``report``)."""
