"""The browser view of the ledger: ``llm-otel ui`` (a local, read-only server) and the HTML report.

The page (``assets/``) shows the report dict of ``llm_otel.views`` and computes no numbers of its own.
"""
