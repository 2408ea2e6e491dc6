"""Retrievers (query image + text -> embedding) shared by train, evaluate and search."""
