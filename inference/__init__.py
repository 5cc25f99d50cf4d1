"""Encoders over onnxruntime: numpy in, numpy out. Never imports the viewer or the index."""
import logging

logging.getLogger("casebook").addHandler(logging.NullHandler())
