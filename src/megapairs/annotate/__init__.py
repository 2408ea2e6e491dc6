"""Relation annotation: describe how a mined (query, target) pair is linked, then write retrieval
instructions from that description. See docs/annotate.md."""
