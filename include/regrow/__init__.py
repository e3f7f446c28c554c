"""regrow: a batch ML system that keeps a model fresh by itself."""
