"""Grading forks: each exercise's tests in a sandboxed copy of the kata, the answers scanned, the score written.

评分：run（逐个练习运行测试）、results（results.json / junit.xml / summary.md）、tamper（只采用答案文件，
扫描伪造）、mutation_score 与 mutation_equivalents（变异测试得分）。命令行 / command line: python -m kata.grade
"""
