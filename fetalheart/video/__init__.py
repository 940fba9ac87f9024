"""Video -> curated frames: decoding and the one video reader/writer (``io``), frame names (``naming``),
sharpness and duplicates (``quality``), crop/resize maps (``geometry``), the ultrasound sector
(``sector``) and the ``extract_frames`` stage (``extract``)."""
