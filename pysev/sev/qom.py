"""A small QOM: named types with parents, abstract types, typed properties.

It mirrors how QEMU describes user-creatable objects: a type has a name
("sev-guest"), a parent ("sev-common"), may be abstract, and carries
properties (kebab-case names, a type, a default and a description).  Class
properties belong to every object of the type and its subtypes; instance
properties are added per object when it is created.  `-object TYPE,help`
lists both.

    class SevCommon(QObject, type_name="sev-common", parent="x86-confidential-guest",
                    abstract=True):
        properties = (Prop("cbitpos", "uint32", description="..."),)
"""


class QomError(ValueError):
    """A bad type name, property name or value; the message is for the user."""


TYPES = {}


def _parse_bool(text):
    low = str(text).lower()
    if low in ("on", "yes", "true", "1"):
        return True
    if low in ("off", "no", "false", "0"):
        return False
    raise ValueError("expects on or off")


def _parse_uint(bits):
    def parse(text):
        if isinstance(text, bool):
            raise ValueError("expects a number")
        value = text if isinstance(text, int) else int(str(text), 0)
        if not 0 <= value < (1 << bits):
            raise ValueError(f"expects a number from 0 to {(1 << bits) - 1:#x}")
        return value
    return parse


def _parse_onoffauto(text):
    low = str(text).lower()
    if low not in ("on", "off", "auto"):
        raise ValueError("expects on, off or auto")
    return low


PARSERS = {
    "str": str,
    "bool": _parse_bool,
    "uint32": _parse_uint(32),
    "uint64": _parse_uint(64),
    "OnOffAuto": _parse_onoffauto,
}


class Prop:
    """A property: name, type (a key of PARSERS), default, description, validator.

    validate(obj, value) may raise ValueError; apply(obj, value) runs after a
    successful set (for example to read a key file); hidden values (secrets)
    are never shown by help or qom-get.
    """

    def __init__(self, name, ptype, default=None, description="", validate=None,
                 apply=None, instance=False):
        if ptype not in PARSERS:
            raise ValueError(f"unknown property type {ptype}")
        self.name, self.type, self.default = name, ptype, default
        self.description, self.validate, self.apply = description, validate, apply
        self.instance = instance


class QObject:
    """Base of every pysev object type ("object" in QEMU)."""
    type_name = "object"
    parent_name = None
    abstract = True
    properties = ()

    def __init_subclass__(cls, type_name=None, parent=None, abstract=False, **kw):
        super().__init_subclass__(**kw)
        if type_name is None:
            raise TypeError("QObject subclasses need type_name=")
        cls.type_name, cls.parent_name, cls.abstract = type_name, parent, abstract
        if parent is not None and parent not in TYPES:
            raise TypeError(f"parent type {parent} is not registered")
        TYPES[type_name] = cls

    def __init__(self, obj_id=None):
        self.id = obj_id
        self._values = {}
        self._instance_props = {}
        for prop in self.instance_properties():
            self._instance_props[prop.name] = prop
        for prop in self.all_properties().values():
            if prop.default is not None:
                self._values[prop.name] = prop.default

    # ---- type information ---------------------------------------------------------
    @classmethod
    def ancestry(cls):
        """Type names from this type up to the root."""
        out = []
        name = cls.type_name
        while name is not None:
            out.append(name)
            name = TYPES[name].parent_name
        return out

    @classmethod
    def class_properties(cls):
        props = {}
        for name in reversed(cls.ancestry()):
            for prop in TYPES[name].__dict__.get("properties", ()):
                if not prop.instance:
                    props[prop.name] = prop
        return props

    @classmethod
    def instance_properties(cls):
        props = []
        for name in reversed(cls.ancestry()):
            props.extend(p for p in TYPES[name].__dict__.get("properties", ()) if p.instance)
        return props

    def all_properties(self=None):
        cls = self if isinstance(self, type) else type(self)
        props = dict(cls.class_properties())
        for p in cls.instance_properties():
            props[p.name] = p
        return props

    # ---- properties ------------------------------------------------------------------
    def prop(self, name):
        props = type(self).all_properties(type(self))
        if name not in props:
            raise QomError(f"Property '{self.type_name}.{name}' not found")
        return props[name]

    def set(self, name, value):
        prop = self.prop(name)
        try:
            parsed = PARSERS[prop.type](value)
            if prop.validate is not None:
                prop.validate(self, parsed)
        except ValueError as exc:
            raise QomError(f"Parameter '{name}' {exc}") from None
        if prop.apply is not None:
            prop.apply(self, parsed)          # may raise QomError; then nothing changes
        self._values[name] = parsed

    def get(self, name):
        self.prop(name)
        return self._values.get(name)

    def is_set(self, name):
        return name in self._values and self._values[name] != self.prop(name).default

    def __repr__(self):
        return f"<{self.type_name} id={self.id!r}>"


def type_help(type_name):
    """The text of `-object TYPE,help`: every property with its type and description."""
    cls = lookup(type_name)
    props = cls.all_properties(cls)
    lines = [f"{type_name} options:"]
    for name in sorted(props):
        p = props[name]
        left = f"  {name}=<{p.type}>"
        desc = p.description
        if p.default is not None:
            shown = ("on" if p.default else "off") if p.type == "bool" else (
                f"{p.default:#x}" if isinstance(p.default, int) else str(p.default))
            desc += f" (default: {shown})"
        lines.append(f"{left:<32} - {desc}")
    return "\n".join(lines)


def lookup(type_name):
    cls = TYPES.get(type_name)
    if cls is None:
        raise QomError(f"invalid object type: {type_name}")
    return cls


def object_new(type_name, obj_id=None, props=None):
    """Create an object and set its properties, in the order given."""
    cls = lookup(type_name)
    if cls.abstract:
        raise QomError(f"object type '{type_name}' is abstract")
    obj = cls(obj_id)
    for name, value in (props or {}).items():
        obj.set(name, value)
    obj.complete()
    return obj


def parse_object_option(text):
    """Split "TYPE,id=ID,key=value,..." into (type, id, {key: value})."""
    parts = [p for p in text.split(",")]
    if not parts or not parts[0] or "=" in parts[0]:
        raise QomError("-object: expected TYPE,id=ID,key=value,...")
    type_name = parts[0]
    obj_id = None
    props = {}
    for part in parts[1:]:
        if part == "help":
            props["help"] = True
            continue
        if "=" not in part:
            raise QomError(f"-object: '{part}' is not key=value")
        key, value = part.split("=", 1)
        if key == "id":
            obj_id = value
        elif key in props:
            raise QomError(f"-object: property '{key}' given twice")
        else:
            props[key] = value
    return type_name, obj_id, props
