"""LabelMe -> COCO: read every LabelMe-compatible variant (``labelme``), the per-file pass that checks a file
and turns its shapes into instances (``reading``), COCO instances with polygons or RLE (``coco``, ``rle``),
splits that do not leak neighbouring frames (``split``: grouped splits and K folds), the conversion stage
itself (``convert``) and its report (``report``)."""
