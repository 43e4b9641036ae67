"""Your workspace: fill in each exNN module until `pytest exercises` is green. 你的练习区。"""
