"""The Wave GUI: one module per page under pages/, the shell in main.py and layout.py."""
