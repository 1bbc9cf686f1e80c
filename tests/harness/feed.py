"""Driving agent components without the agent: through a Dispatcher, as its main loop does.

``feed(component)`` is the dispatcher that feeds ``component`` alone (made on
first use, one per component): ``feed(c).snapshot(items)`` then
``feed(c).update(key, value)``; the test calls ``flush``/``tick`` itself.
"""
import weakref

from calicoctl.agent.dispatch import Dispatcher

_FEEDS = weakref.WeakKeyDictionary()


def _hostname(component):
    config = getattr(component, "config", None)
    return getattr(component, "hostname", None) or getattr(config, "hostname", "")


def feed(component):
    dispatcher = _FEEDS.get(component)
    if dispatcher is None:
        dispatcher = _FEEDS[component] = Dispatcher(_hostname(component), [component])
    return dispatcher
