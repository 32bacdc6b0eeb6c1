"""Datasets: importing JSONL, CSV and Parquet files into the store, with one-line errors.

May import: `tunelab.store`, `engine.errors`.
"""
