"""One module per command; each composes the layers below."""
