"""Lookalike: visual product recommendations for Django stores.

``lookalike.catalog`` is the one interface through which the ``recommendations``, ``scraper`` and
``campaigns`` apps reach a shop's catalog; ``LOOKALIKE`` in the settings describes that catalog.
"""
