"""Why a mined pair does not become a triplet: the drop reasons the plan counts and the card explains.

A triplet is (query image, instructions, target image, hard negatives). The rules, in the order a
pair meets them (plan.py applies them to whole columns):

- the first row of each (query, target) is used; later copies are `duplicate_pair`;
- the annotation is the first annotation row of the same (query, target);
- instructions are cleaned: whitespace runs collapsed, ends stripped, empties and repeats dropped;
- hns: the query first, then the mined negatives that are usable, distinct, and not the target,
  up to `num_hard_negatives` in all (notes count negatives that were the target or unusable,
  lists that did not start with the query, and triplets with fewer negatives than asked).
"""

from __future__ import annotations

# Why a pair did not become a triplet (keys of the plan's `dropped`; the card explains each).
DROP_REASONS = {
    "no_annotation": "the pair has no annotation row",
    "annotation_failed": "the annotation failed (see the failures table)",
    "too_few_instructions": "fewer usable instructions than export.min_instructions",
    "writer_excluded": "written by a writer listed in export.exclude_writers",
    "query_unusable": "the query image is not usable in the corpus",
    "target_unusable": "the target image is not usable in the corpus",
    "target_is_query": "target and query are the same image",
    "duplicate_pair": "the same (query, target) appears twice in the pairs",
    "split_boundary": "its images straddle the train/validation boundary (see the split policy)",
}
