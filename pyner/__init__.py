"""pyner: a PyTorch NER transformer as one ONNX artifact, with identical entities in Python and on the JVM.

    import pyner
    model = pyner.load("artifacts/demo")
    model.predict(["Angela Merkel visited Paris."], aggregation="simple")

The runtime imports onnxruntime, tokenizers and numpy only (never torch or transformers).
"""

__version__ = "0.1.0"  # the one definition: pyproject.toml reads it, the manifest and the CLI print it


def __getattr__(name):  # lazy: `import pyner` stays cheap for the CLI
    if name == "AGGREGATIONS":
        from .artifact import AGGREGATIONS

        return AGGREGATIONS
    if name in ("load", "Model", "Encoded", "TokenWindow", "ScoredText"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'pyner' has no attribute {name!r}")


__all__ = ["load", "Model", "Encoded", "TokenWindow", "ScoredText", "AGGREGATIONS", "__version__"]
