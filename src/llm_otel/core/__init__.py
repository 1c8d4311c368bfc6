"""The call core: a Call measures one logical LLM call (timings, usage, retries, stream end) and ends in one
immutable CallResult. Usage normalization, stream proxies, retry-sleep hooks and pricing live here too."""
