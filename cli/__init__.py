"""The ``lorareg`` command line: click commands over the registry's HTTP API."""
