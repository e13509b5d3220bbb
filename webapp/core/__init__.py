"""Shared machinery for the site's apps: background jobs, API permissions, domain errors.

Apps build on ``core``; ``core`` imports no app.
"""
