"""The web console: xend's HTTP server (``xend-http-server``) serving a page a person
uses instead of a terminal.  It sits above the API layer and sees xend only through
the API's service protocols (``api/services.py``)."""
