"""embed: one pass over the corpus, several encoders, L2-normalised vectors per similarity view."""
