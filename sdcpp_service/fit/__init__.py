"""Fit a job to the machine: predict its peak memory, choose the switches that make it fit.

```python
from sdcpp_service.fit import Budget, choose, estimate
from sdcpp_service.models import plan
from sdcpp_service.types import GenerateRequest

p = plan("sd15")
est = estimate(p, GenerateRequest("a fox", width=1024, height=1024))
print(est.peak_ram_bytes, est.ram["decode"])
choice = choose(p, GenerateRequest("a fox", width=1024, height=1024), Budget.parse("4G"))
print(choice.line())
```
"""

from __future__ import annotations

from sdcpp_service.fit.choose import Budget, Choice, choose, parse_bytes
from sdcpp_service.fit.costs import Table, default_table
from sdcpp_service.fit.estimate import Estimate, estimate
from sdcpp_service.fit.shape import UpscaleJob
from sdcpp_service.fit.switches import Switches

__all__ = [
    "Budget",
    "Choice",
    "Estimate",
    "Switches",
    "Table",
    "UpscaleJob",
    "choose",
    "default_table",
    "estimate",
    "parse_bytes",
]
