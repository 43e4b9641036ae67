# quant-kata's pytest plugin: --target switch, progress table, hints (see kata/plugin.py).
pytest_plugins = ["kata.plugin"]
