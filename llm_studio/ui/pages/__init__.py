"""One module per page; each registers its @on handlers when imported."""
