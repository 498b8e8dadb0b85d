"""The agent bureaucracy (top layer, beside recipes/): agents with missions and conservative scopes.

So far: `Bureaucracy` (a folder of agents: episodes recorded in the feedback database, adherence
ratings by the AI judge, reflection rounds), `Agent` and `run_episodes` (episodes among the agents whose scopes cover a situation), `Scope` (an embedding-similarity membership test whose false-accept rate on outsiders is
bounded by split conformal calibration) and the example roster and situation pool. Episodes,
reflection and extension build on these.
"""

from steering.agents.bureaucracy import Bureaucracy, mission_principle
from steering.agents.episode import Agent, Episode, Turn, covering, run_episodes
from steering.agents.reflection import ReflectionRound
from steering.agents.scope import Predicates, Scope, conformal_threshold, coverage_report
from steering.agents.situations import Mission, Roster, Situation, load_roster, load_situations

__all__ = [
    "Agent",
    "Bureaucracy",
    "Episode",
    "Mission",
    "Predicates",
    "ReflectionRound",
    "Roster",
    "Scope",
    "Situation",
    "Turn",
    "conformal_threshold",
    "coverage_report",
    "covering",
    "load_roster",
    "load_situations",
    "mission_principle",
    "run_episodes",
]
