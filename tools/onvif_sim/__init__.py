"""ONVIF device simulator: a real SOAP 1.2 service standing in for an IP camera in tests and `make run`.

It answers the Device, Media and PTZ operations onvif-zeep-async uses, checks WS-UsernameToken
digests, keeps PTZ state, and answers WS-Discovery probes on a loopback UDP port.
"""
