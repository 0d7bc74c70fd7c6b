"""The deployers: the shared edge API, then one package per variant."""
