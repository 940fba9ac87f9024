"""Prediction with a trained model: the model and its own test-time preprocessing (``predictor``),
predictions as COCO annotations and LabelMe polygons (``export``), and ``run_prediction`` over images,
folders and videos (``predict``)."""
