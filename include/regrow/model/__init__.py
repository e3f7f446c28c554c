"""The model lifecycle: training, evaluation, the registry, promotion, scoring, lineage."""
