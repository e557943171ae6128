"""Device, Media and PTZ operations of the simulated camera, answered in the official WSDL shapes."""

from __future__ import annotations

import datetime as dt
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from tools.onvif_sim.ptz_state import PAN_RANGE, TILT_RANGE, ZOOM_RANGE, Position, PtzState
from tools.onvif_sim.soap import SoapFault, find, parse_duration, text

SPACE_ABS_PT = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"
SPACE_ABS_Z = "http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace"
SPACE_REL_PT = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/TranslationGenericSpace"
SPACE_REL_Z = "http://www.onvif.org/ver10/tptz/ZoomSpaces/TranslationGenericSpace"
SPACE_VEL_PT = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/VelocityGenericSpace"
SPACE_VEL_Z = "http://www.onvif.org/ver10/tptz/ZoomSpaces/VelocityGenericSpace"
SPACE_SPEED_PT = "http://www.onvif.org/ver10/tptz/PanTiltSpaces/GenericSpeedSpace"
SPACE_SPEED_Z = "http://www.onvif.org/ver10/tptz/ZoomSpaces/ZoomGenericSpeedSpace"
NODE_TOKEN = "ptz_node_1"
PTZ_CONF_TOKEN = "ptz_conf_1"


@dataclass
class StreamProfile:
    token: str
    name: str
    width: int
    height: int
    fps: int
    bitrate_kbps: int
    rtsp_url: str


@dataclass
class SimConfig:
    username: str
    password: str
    rtsp_main: str
    rtsp_sub: str
    ptz: bool = True
    clock_offset_s: float = 0.0
    codec: str = "H264"
    honour_move_timeout: bool = True
    manufacturer: str = "EdgeSim"
    model: str = "PTZ-Sim 1"
    firmware: str = "1.0.0"
    serial: str = "SIM0001"
    default_move_timeout_s: float = 5.0


@dataclass
class RequestRecord:
    op: str
    wall: float
    mono: float
    authorized: bool
    params: dict[str, Any] = field(default_factory=dict)


class SimDevice:
    """All device state: PTZ mechanics, reboot counter, a log of the requests that reached it."""

    def __init__(self, cfg: SimConfig, base_url: str = "http://127.0.0.1") -> None:
        self.cfg = cfg
        self.base_url = base_url
        self.ptz = PtzState(honour_timeout=cfg.honour_move_timeout)
        self.reboots = 0
        self.log: deque[RequestRecord] = deque(maxlen=2000)
        self.profiles = [
            StreamProfile("profile_main", "mainStream", 1920, 1080, 25, 4096, cfg.rtsp_main),
            StreamProfile("profile_sub", "subStream", 640, 360, 10, 512, cfg.rtsp_sub),
        ]

    # ---- helpers ---------------------------------------------------------------------------
    def now(self) -> dt.datetime:
        """The device clock (host clock plus the configured offset)."""
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.cfg.clock_offset_s)

    def operations(self) -> dict[str, tuple[str, Callable[[etree._Element], str]]]:
        """local name -> (service, handler). Unauthenticated: only GetSystemDateAndTime."""
        ops: dict[str, tuple[str, Callable[[etree._Element], str]]] = {
            "GetSystemDateAndTime": ("device", self.get_system_date_and_time),
            "GetServices": ("device", self.get_services),
            "GetCapabilities": ("device", self.get_capabilities),
            "GetDeviceInformation": ("device", self.get_device_information),
            "SystemReboot": ("device", self.system_reboot),
            "GetProfiles": ("media", self.get_profiles),
            "GetStreamUri": ("media", self.get_stream_uri),
            "GetSnapshotUri": ("media", self.get_snapshot_uri),
        }
        if self.cfg.ptz:
            for name in (
                "ContinuousMove RelativeMove AbsoluteMove Stop GotoPreset GetPresets SetPreset RemovePreset "
                "GotoHomePosition SetHomePosition GetStatus GetConfigurations GetNodes"
            ).split():
                ops[name] = ("ptz", getattr(self, "ptz_" + _snake(name)))
        return ops

    def _profile(self, req: etree._Element) -> StreamProfile:
        token = text(req, "ProfileToken")
        for p in self.profiles:
            if p.token == token:
                return p
        raise SoapFault("env:Sender", "ter:InvalidArgVal", f"no profile {token!r}", "ter:NoProfile")

    # ---- device ----------------------------------------------------------------------------
    def get_system_date_and_time(self, req: etree._Element) -> str:
        now = self.now()
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime>{_dt(now)}</tt:UTCDateTime><tt:LocalDateTime>{_dt(now)}</tt:LocalDateTime>"
            "</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def _xaddrs(self) -> list[tuple[str, str, str]]:
        out = [
            ("device", "http://www.onvif.org/ver10/device/wsdl", f"{self.base_url}/onvif/device_service"),
            ("media", "http://www.onvif.org/ver10/media/wsdl", f"{self.base_url}/onvif/media_service"),
        ]
        if self.cfg.ptz:
            out.append(("ptz", "http://www.onvif.org/ver20/ptz/wsdl", f"{self.base_url}/onvif/ptz_service"))
        return out

    def get_services(self, req: etree._Element) -> str:
        items = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{url}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for _, ns, url in self._xaddrs()
        )
        return f"<tds:GetServicesResponse>{items}</tds:GetServicesResponse>"

    def get_capabilities(self, req: etree._Element) -> str:
        x = {k: url for k, _, url in self._xaddrs()}
        ptz = f"<tt:PTZ><tt:XAddr>{x['ptz']}</tt:XAddr></tt:PTZ>" if "ptz" in x else ""
        return (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{x['device']}</tt:XAddr></tt:Device>"
            f"<tt:Media><tt:XAddr>{x['media']}</tt:XAddr><tt:StreamingCapabilities>"
            "<tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
            "<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
            f"{ptz}</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )

    def get_device_information(self, req: etree._Element) -> str:
        c = self.cfg
        return (
            "<tds:GetDeviceInformationResponse>"
            f"<tds:Manufacturer>{escape(c.manufacturer)}</tds:Manufacturer><tds:Model>{escape(c.model)}</tds:Model>"
            f"<tds:FirmwareVersion>{escape(c.firmware)}</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{escape(c.serial)}</tds:SerialNumber><tds:HardwareId>sim</tds:HardwareId>"
            "</tds:GetDeviceInformationResponse>"
        )

    def system_reboot(self, req: etree._Element) -> str:
        self.reboots += 1
        self.ptz.stop()
        return "<tds:SystemRebootResponse><tds:Message>Rebooting in 30 seconds</tds:Message></tds:SystemRebootResponse>"

    # ---- media -----------------------------------------------------------------------------
    def _ptz_configuration_xml(self) -> str:
        return (
            f"<tt:Name>ptz</tt:Name><tt:UseCount>2</tt:UseCount><tt:NodeToken>{NODE_TOKEN}</tt:NodeToken>"
            f"<tt:DefaultAbsolutePantTiltPositionSpace>{SPACE_ABS_PT}</tt:DefaultAbsolutePantTiltPositionSpace>"
            f"<tt:DefaultAbsoluteZoomPositionSpace>{SPACE_ABS_Z}</tt:DefaultAbsoluteZoomPositionSpace>"
            f"<tt:DefaultRelativePanTiltTranslationSpace>{SPACE_REL_PT}</tt:DefaultRelativePanTiltTranslationSpace>"
            f"<tt:DefaultRelativeZoomTranslationSpace>{SPACE_REL_Z}</tt:DefaultRelativeZoomTranslationSpace>"
            f"<tt:DefaultContinuousPanTiltVelocitySpace>{SPACE_VEL_PT}</tt:DefaultContinuousPanTiltVelocitySpace>"
            f"<tt:DefaultContinuousZoomVelocitySpace>{SPACE_VEL_Z}</tt:DefaultContinuousZoomVelocitySpace>"
            f'<tt:DefaultPTZSpeed><tt:PanTilt x="1" y="1" space="{SPACE_SPEED_PT}"/>'
            f'<tt:Zoom x="1" space="{SPACE_SPEED_Z}"/></tt:DefaultPTZSpeed>'
            f"<tt:DefaultPTZTimeout>PT{self.cfg.default_move_timeout_s:g}S</tt:DefaultPTZTimeout>"
            f"<tt:PanTiltLimits><tt:Range><tt:URI>{SPACE_ABS_PT}</tt:URI>{_range('X', PAN_RANGE)}"
            f"{_range('Y', TILT_RANGE)}</tt:Range></tt:PanTiltLimits>"
            f"<tt:ZoomLimits><tt:Range><tt:URI>{SPACE_ABS_Z}</tt:URI>{_range('X', ZOOM_RANGE)}</tt:Range></tt:ZoomLimits>"
        )

    def get_profiles(self, req: etree._Element) -> str:
        out = []
        enc = self.cfg.codec
        for p in self.profiles:
            codec_block = (
                "<tt:H264><tt:GovLength>50</tt:GovLength><tt:H264Profile>Main</tt:H264Profile></tt:H264>"
            )
            ptz = (
                f'<tt:PTZConfiguration token="{PTZ_CONF_TOKEN}">{self._ptz_configuration_xml()}</tt:PTZConfiguration>'
                if self.cfg.ptz
                else ""
            )
            out.append(
                f'<trt:Profiles token="{p.token}" fixed="true"><tt:Name>{p.name}</tt:Name>'
                '<tt:VideoSourceConfiguration token="vsc_1"><tt:Name>vsc</tt:Name><tt:UseCount>2</tt:UseCount>'
                '<tt:SourceToken>video_source_1</tt:SourceToken><tt:Bounds x="0" y="0" width="1920" height="1080"/>'
                "</tt:VideoSourceConfiguration>"
                f'<tt:VideoEncoderConfiguration token="vec_{p.token}"><tt:Name>{p.name}</tt:Name>'
                f"<tt:UseCount>1</tt:UseCount><tt:Encoding>{enc}</tt:Encoding>"
                f"<tt:Resolution><tt:Width>{p.width}</tt:Width><tt:Height>{p.height}</tt:Height></tt:Resolution>"
                "<tt:Quality>4</tt:Quality><tt:RateControl>"
                f"<tt:FrameRateLimit>{p.fps}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>"
                f"<tt:BitrateLimit>{p.bitrate_kbps}</tt:BitrateLimit></tt:RateControl>{codec_block}"
                "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address>"
                "</tt:Address><tt:Port>0</tt:Port><tt:TTL>1</tt:TTL><tt:AutoStart>false</tt:AutoStart>"
                "</tt:Multicast><tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>"
                f"{ptz}</trt:Profiles>"
            )
        return f"<trt:GetProfilesResponse>{''.join(out)}</trt:GetProfilesResponse>"

    def _media_uri(self, uri: str) -> str:
        return (
            f"<trt:MediaUri><tt:Uri>{escape(uri)}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri>"
        )

    def get_stream_uri(self, req: etree._Element) -> str:
        p = self._profile(req)
        return f"<trt:GetStreamUriResponse>{self._media_uri(p.rtsp_url)}</trt:GetStreamUriResponse>"

    def get_snapshot_uri(self, req: etree._Element) -> str:
        p = self._profile(req)
        uri = f"{self.base_url}/snapshot/{p.token}.jpg"
        return f"<trt:GetSnapshotUriResponse>{self._media_uri(uri)}</trt:GetSnapshotUriResponse>"

    # ---- ptz -------------------------------------------------------------------------------
    def _ptz_profile(self, req: etree._Element) -> None:
        self._profile(req)

    def ptz_continuous_move(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        v = _vector(req, "Velocity", Position(0, 0, 0))
        timeout = text(req, "Timeout")
        self.ptz.continuous_move(v, parse_duration(timeout) if timeout else self.cfg.default_move_timeout_s)
        return "<tptz:ContinuousMoveResponse/>"

    def ptz_relative_move(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        self.ptz.relative_move(_vector(req, "Translation", Position(0, 0, 0)))
        return "<tptz:RelativeMoveResponse/>"

    def ptz_absolute_move(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        self.ptz.absolute_move(_vector(req, "Position", self.ptz.position()))
        return "<tptz:AbsoluteMoveResponse/>"

    def ptz_stop(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        self.ptz.stop()
        return "<tptz:StopResponse/>"

    def ptz_goto_preset(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        token = text(req, "PresetToken") or ""
        if token not in self.ptz.presets:
            raise SoapFault("env:Sender", "ter:InvalidArgVal", f"no preset {token!r}", "ter:NoToken")
        self.ptz.goto_preset(token)
        return "<tptz:GotoPresetResponse/>"

    def ptz_get_presets(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        items = "".join(
            f'<tptz:Preset token="{escape(p.token)}"><tt:Name>{escape(p.name)}</tt:Name>'
            f"<tt:PTZPosition>{_pos_xml(p.position)}</tt:PTZPosition></tptz:Preset>"
            for p in self.ptz.presets.values()
        )
        return f"<tptz:GetPresetsResponse>{items}</tptz:GetPresetsResponse>"

    def ptz_set_preset(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        try:
            token = self.ptz.set_preset(text(req, "PresetName"), text(req, "PresetToken"))
        except KeyError as exc:
            raise SoapFault("env:Sender", "ter:InvalidArgVal", "no such preset token", "ter:NoToken") from exc
        except OverflowError as exc:
            raise SoapFault("env:Receiver", "ter:Action", "too many presets", "ter:TooManyPresets") from exc
        return f"<tptz:SetPresetResponse><tptz:PresetToken>{escape(token)}</tptz:PresetToken></tptz:SetPresetResponse>"

    def ptz_remove_preset(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        token = text(req, "PresetToken") or ""
        if token not in self.ptz.presets:
            raise SoapFault("env:Sender", "ter:InvalidArgVal", f"no preset {token!r}", "ter:NoToken")
        self.ptz.remove_preset(token)
        return "<tptz:RemovePresetResponse/>"

    def ptz_goto_home_position(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        self.ptz.goto_home()
        return "<tptz:GotoHomePositionResponse/>"

    def ptz_set_home_position(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        self.ptz.set_home()
        return "<tptz:SetHomePositionResponse/>"

    def ptz_get_status(self, req: etree._Element) -> str:
        self._ptz_profile(req)
        pos = self.ptz.position()
        state = "MOVING" if self.ptz.moving() else "IDLE"
        return (
            f"<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position>{_pos_xml(pos)}</tt:Position>"
            f"<tt:MoveStatus><tt:PanTilt>{state}</tt:PanTilt><tt:Zoom>{state}</tt:Zoom></tt:MoveStatus>"
            f"<tt:UtcTime>{self.now().strftime('%Y-%m-%dT%H:%M:%SZ')}</tt:UtcTime>"
            "</tptz:PTZStatus></tptz:GetStatusResponse>"
        )

    def ptz_get_configurations(self, req: etree._Element) -> str:
        return (
            f'<tptz:GetConfigurationsResponse><tptz:PTZConfiguration token="{PTZ_CONF_TOKEN}">'
            f"{self._ptz_configuration_xml()}</tptz:PTZConfiguration></tptz:GetConfigurationsResponse>"
        )

    def ptz_get_nodes(self, req: etree._Element) -> str:
        spaces = (
            f"<tt:AbsolutePanTiltPositionSpace><tt:URI>{SPACE_ABS_PT}</tt:URI>{_range('X', PAN_RANGE)}"
            f"{_range('Y', TILT_RANGE)}</tt:AbsolutePanTiltPositionSpace>"
            f"<tt:AbsoluteZoomPositionSpace><tt:URI>{SPACE_ABS_Z}</tt:URI>{_range('X', ZOOM_RANGE)}"
            "</tt:AbsoluteZoomPositionSpace>"
            f"<tt:RelativePanTiltTranslationSpace><tt:URI>{SPACE_REL_PT}</tt:URI>{_range('X', (-2, 2))}"
            f"{_range('Y', (-2, 2))}</tt:RelativePanTiltTranslationSpace>"
            f"<tt:RelativeZoomTranslationSpace><tt:URI>{SPACE_REL_Z}</tt:URI>{_range('X', (-1, 1))}"
            "</tt:RelativeZoomTranslationSpace>"
            f"<tt:ContinuousPanTiltVelocitySpace><tt:URI>{SPACE_VEL_PT}</tt:URI>{_range('X', (-1, 1))}"
            f"{_range('Y', (-1, 1))}</tt:ContinuousPanTiltVelocitySpace>"
            f"<tt:ContinuousZoomVelocitySpace><tt:URI>{SPACE_VEL_Z}</tt:URI>{_range('X', (-1, 1))}"
            "</tt:ContinuousZoomVelocitySpace>"
            f"<tt:PanTiltSpeedSpace><tt:URI>{SPACE_SPEED_PT}</tt:URI>{_range('X', (0, 1))}</tt:PanTiltSpeedSpace>"
            f"<tt:ZoomSpeedSpace><tt:URI>{SPACE_SPEED_Z}</tt:URI>{_range('X', (0, 1))}</tt:ZoomSpeedSpace>"
        )
        return (
            f'<tptz:GetNodesResponse><tptz:PTZNode token="{NODE_TOKEN}" FixedHomePosition="false">'
            f"<tt:Name>PTZ</tt:Name><tt:SupportedPTZSpaces>{spaces}</tt:SupportedPTZSpaces>"
            "<tt:MaximumNumberOfPresets>32</tt:MaximumNumberOfPresets><tt:HomeSupported>true</tt:HomeSupported>"
            "</tptz:PTZNode></tptz:GetNodesResponse>"
        )

    def state(self) -> dict[str, Any]:
        """Test hook (GET /sim/state): what a technician would see by looking at the camera."""
        return {
            "position": self.ptz.position().as_dict(),
            "moving": self.ptz.moving(),
            "home": self.ptz.home.as_dict(),
            "presets": {t: {"name": p.name, **p.position.as_dict()} for t, p in self.ptz.presets.items()},
            "reboots": self.reboots,
            "clock_offset_s": self.cfg.clock_offset_s,
            "requests": [
                {"op": r.op, "wall": r.wall, "authorized": r.authorized, "params": r.params} for r in self.log
            ],
        }


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _dt(t: dt.datetime) -> str:
    return (
        f"<tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}</tt:Minute><tt:Second>{t.second}</tt:Second>"
        f"</tt:Time><tt:Date><tt:Year>{t.year}</tt:Year><tt:Month>{t.month}</tt:Month><tt:Day>{t.day}</tt:Day></tt:Date>"
    )


def _range(axis: str, r: tuple[float, float]) -> str:
    return f"<tt:{axis}Range><tt:Min>{r[0]:g}</tt:Min><tt:Max>{r[1]:g}</tt:Max></tt:{axis}Range>"


def _pos_xml(p: Position) -> str:
    return (
        f'<tt:PanTilt x="{p.pan:.4f}" y="{p.tilt:.4f}" space="{SPACE_ABS_PT}"/>'
        f'<tt:Zoom x="{p.zoom:.4f}" space="{SPACE_ABS_Z}"/>'
    )


def _vector(req: etree._Element, name: str, default: Position) -> Position:
    """Read <name><PanTilt x y/><Zoom x/></name>; missing axes keep the default."""
    el = find(req, name)
    pt = find(el, "PanTilt")
    z = find(el, "Zoom")
    try:
        return Position(
            float(pt.get("x", default.pan)) if pt is not None else default.pan,
            float(pt.get("y", default.tilt)) if pt is not None else default.tilt,
            float(z.get("x", default.zoom)) if z is not None else default.zoom,
        )
    except ValueError as exc:
        raise SoapFault("env:Sender", "ter:InvalidArgVal", f"bad {name}: {exc}") from exc


def record(device: SimDevice, op: str, authorized: bool, req: etree._Element | None) -> None:
    params: dict[str, Any] = {}
    if req is not None:
        for tag in ("ProfileToken", "PresetToken", "PresetName", "Timeout"):
            v = text(req, tag)
            if v is not None:
                params[tag] = v
        for vec in ("Velocity", "Translation", "Position"):
            if find(req, vec) is not None:
                params[vec] = _vector(req, vec, Position(0, 0, 0)).as_dict()
    device.log.append(RequestRecord(op, time.time(), time.monotonic(), authorized, params))
