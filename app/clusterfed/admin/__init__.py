"""Operating a federation (docs/operating.md): the admin API and page, health and metrics."""
