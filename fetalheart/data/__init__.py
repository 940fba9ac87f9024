"""Detectron2 data plumbing: dataset registration and the mapper that applies INPUT.ENHANCE."""
