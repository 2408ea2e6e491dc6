"""megapairs: MegaPairs data synthesis, BGE-VL-compatible retrievers, CIR evaluation and search."""

__version__ = "0.1.0"
