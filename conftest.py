# quant-kata's pytest plugin: --target switch, progress table, hints (see kata/harness/plugin.py).
pytest_plugins = ["kata.harness.plugin"]
