"""pyner: a PyTorch NER transformer as one ONNX artifact, with identical entities in Python and on the JVM.

    import pyner
    model = pyner.load("artifacts/demo")
    model.predict(["Angela Merkel visited Paris."], aggregation="simple")

The runtime imports onnxruntime, tokenizers and numpy only (never torch or transformers).
"""

__version__ = "0.1.0"

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def __getattr__(name):  # lazy: `import pyner` stays cheap for the CLI
    if name in ("load", "Model", "Encoded", "Window"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'pyner' has no attribute {name!r}")


__all__ = ["load", "Model", "Encoded", "Window", "AGGREGATIONS", "__version__"]
