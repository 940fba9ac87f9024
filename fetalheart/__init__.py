"""fetalheart: instance segmentation of fetal-heart ultrasound with Mask R-CNN on Detectron2.

Importing the package patches nothing: the detectron2 compatibility shims (``fetalheart._compat``)
are applied by the modules that import detectron2. ARCHITECTURE.md maps the packages.
"""

__version__ = "0.1.0"
