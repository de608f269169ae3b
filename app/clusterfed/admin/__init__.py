"""Operating a federation (SPEC 3.4, 3.5): the admin API and page, health and metrics."""
