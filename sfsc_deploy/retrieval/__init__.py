"""Retrieval with deployed models: feature extractors over every runtime, gallery files, verification."""
