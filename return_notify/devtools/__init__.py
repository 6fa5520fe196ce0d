"""Developer and operator tools: ``demo``, ``bench``, ``chaos``, the embedded Redis and
PostgreSQL servers from wheels, the local provider servers, sample data and the generated
reference documentation.

May import anything; only the command line (``demo``, ``bench``, ``chaos``) and the tests
import it (an import-linter contract).
"""
