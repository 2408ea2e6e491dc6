"""corpus: ingest captioned images from folders, tables or WebDataset shards into the corpus artifact."""
