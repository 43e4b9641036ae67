"""The learner's pytest harness: plugin (target switch, "not started" reports, progress table), target, progress,
curriculum (titles, points, hints), check (expected-versus-actual helpers for the tests).

学员测试框架：插件、目标切换、进度表、课程与提示、测试用的比较函数。Imports only the learner API.
"""
