"""DingTalk work-notification channel: a framework-free client and a simulator.

``dingtalk.client.DingTalkClient`` talks to DingTalk (or to ``dingtalk.simulator``); nothing
in this package imports Django.
"""

from __future__ import annotations
