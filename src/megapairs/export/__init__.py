"""export: pairs + annotations -> the MegaPairs triplet dataset (q_img, q_text, t_img, hns).

Library entry points (importable without the CLI):

- `ExportConfig`, `ExportStage` (stage name "dataset"; run with `megapairs.stages.run_stage`)
- `read_triplets(path, split="train")`: triplets with absolute image paths, ours or the released layout
- `validate_megapairs(folder)`: the field contract; returns a list of problems
- `write_card`, `regenerate_card`, `write_preview`: the dataset card and the HTML preview
"""

from megapairs.export.card import regenerate_card, write_card
from megapairs.export.config import ExportConfig
from megapairs.export.preview import write_preview
from megapairs.export.reader import find_tables, iter_rows, read_triplets
from megapairs.export.stage import ExportStage
from megapairs.export.validate import validate_megapairs

__all__ = [
    "ExportConfig", "ExportStage", "find_tables", "iter_rows", "read_triplets", "regenerate_card",
    "validate_megapairs", "write_card", "write_preview",
]
