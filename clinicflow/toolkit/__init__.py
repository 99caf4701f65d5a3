"""Pipeline toolkit: extractors, transformers and loaders behind small protocols, composed into pipelines.

Plain logic, no Prefect: ``flows/pipeline.py`` compiles a pipeline spec into one Prefect flow.
"""
