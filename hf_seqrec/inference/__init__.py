"""Offline inference: top-k recommendations for every user of a data set (``scripts/recommend.py``)."""

from .batch import BatchRecommendConfig, recommend_to_parquet

__all__ = ["BatchRecommendConfig", "recommend_to_parquet"]
