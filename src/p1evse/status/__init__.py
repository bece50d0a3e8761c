"""The status model of one site (`SiteState`) and what observes it: the retained state
topic and Home Assistant's discovery. The page and /metrics read it (`p1evse.web`)."""
