"""The HTTP face of a registry peer (Flask under waitress) and the `registry` command."""
