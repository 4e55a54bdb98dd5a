"""Model zoos: populations of small models, their sparsified twins, and population analyses."""
