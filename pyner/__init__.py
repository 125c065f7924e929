"""pyner: a PyTorch NER transformer as one ONNX artifact, with identical entities in Python and on the JVM."""

__version__ = "0.1.0"
