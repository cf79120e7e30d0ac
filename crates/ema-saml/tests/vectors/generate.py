#!/usr/bin/env python3
"""Generates the third-party SAML vectors of this folder with two independent XML-DSig
implementations, signxml (Python, over lxml) and the xmlsec1 command-line tool (libxmlsec1),
not with ema-saml. See README.md.

Run from this folder:
    apt-get install xmlsec1
    python3 -m venv /tmp/v && /tmp/v/bin/pip install signxml && /tmp/v/bin/python generate.py
Each run makes fresh keys, so the committed files change as a set.
"""
import base64
import datetime
import json
import os
import subprocess
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import SignatureConstructionMethod, XMLSigner, XMLVerifier
from signxml.algorithms import DigestAlgorithm, SignatureMethod

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ISSUER = "https://idp.acme.example/saml"
AUDIENCE = "https://desk.acme.example/sp"
ISSUE = "2026-01-01T00:00:00Z"
UNTIL = "2026-01-01T00:05:00Z"


def b64u(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def cert_for(key):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idp.acme.example")])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


# The assertion as an IdP would send it: a default namespace on nothing, `saml` and `ds`
# prefixes, xsi:type on attribute values (the `xs` prefix is only used inside an attribute
# value, which is why some IdPs list it in InclusiveNamespaces).
TEMPLATE = f"""<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ID="{{id}}" IssueInstant="{ISSUE}" Version="2.0">
  <saml:Issuer>{ISSUER}</saml:Issuer>
  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Id="placeholder"></ds:Signature>
  <saml:Subject>
    <saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" SPNameQualifier="{AUDIENCE}">ana@acme.example</saml:NameID>
    <saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">
      <saml:SubjectConfirmationData NotOnOrAfter="{UNTIL}" Recipient="https://desk.acme.example/acs"/>
    </saml:SubjectConfirmation>
  </saml:Subject>
  <saml:Conditions NotBefore="{ISSUE}" NotOnOrAfter="{UNTIL}">
    <saml:AudienceRestriction>
      <saml:Audience>{AUDIENCE}</saml:Audience>
    </saml:AudienceRestriction>
  </saml:Conditions>
  <saml:AuthnStatement AuthnInstant="2025-12-31T23:59:30Z" SessionIndex="_s-1">
    <saml:AuthnContext>
      <saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>
    </saml:AuthnContext>
  </saml:AuthnStatement>
  <saml:AttributeStatement>
    <saml:Attribute Name="email" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">
      <saml:AttributeValue xsi:type="xs:string">ana@acme.example</saml:AttributeValue>
    </saml:Attribute>
    <saml:Attribute Name="groups">
      <saml:AttributeValue xsi:type="xs:string">eng</saml:AttributeValue>
      <saml:AttributeValue xsi:type="xs:string">R&amp;D &lt;west&gt;</saml:AttributeValue>
    </saml:Attribute>
  </saml:AttributeStatement>
</saml:Assertion>"""


def sign(name, key, cert, method):
    doc = etree.fromstring(TEMPLATE.format(id="_" + name).encode())
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=method,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=EXC_C14N,
    )
    signed = signer.sign(
        doc,
        key=key,
        cert=cert.public_bytes(serialization.Encoding.PEM),
        reference_uri="_" + name,
    )
    xml = etree.tostring(signed)
    # Check with signxml's own verifier before committing.
    XMLVerifier().verify(xml, x509_cert=cert, expect_references=1)
    with open(f"{name}.xml", "wb") as f:
        f.write(xml)


rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec_key = ec.generate_private_key(ec.SECP256R1())
rsa_cert, ec_cert = cert_for(rsa_key), cert_for(ec_key)

sign("signxml-rsa-sha256", rsa_key, rsa_cert, SignatureMethod.RSA_SHA256)
sign("signxml-rsa-sha512", rsa_key, rsa_cert, SignatureMethod.RSA_SHA512)
sign("signxml-ecdsa-sha256", ec_key, ec_cert, SignatureMethod.ECDSA_SHA256)

rn = rsa_key.public_key().public_numbers()
en = ec_key.public_key().public_numbers()
with open("rsa.jwk.json", "w") as f:
    json.dump({"kty": "RSA", "n": b64u(rn.n), "e": b64u(rn.e)}, f)
with open("ec.jwk.json", "w") as f:
    json.dump({"kty": "EC", "crv": "P-256", "x": b64u(en.x).rjust(43, "A"), "y": b64u(en.y).rjust(43, "A")}, f)
for name, cert in (("rsa", rsa_cert), ("ec", ec_cert)):
    with open(f"{name}.cert.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


# xmlsec1 signs a template we write, here with an InclusiveNamespaces PrefixList on both the
# SignedInfo canonicalization and the reference transform. (signxml's enveloped mode digests
# with the prefix list but leaves it out of the transform, so it cannot make this vector.)
XMLSEC_SIGNATURE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="xs"/></ds:CanonicalizationMethod>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference URI="#{id}"><ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"><ec:InclusiveNamespaces xmlns:ec="http://www.w3.org/2001/10/xml-exc-c14n#" PrefixList="xs xsi"/></ds:Transform>
</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference>
</ds:SignedInfo><ds:SignatureValue/></ds:Signature>"""

name = "xmlsec1-rsa-sha256-inclusive-prefixes"
template = TEMPLATE.format(id="_" + name).replace(
    '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#" Id="placeholder"></ds:Signature>',
    XMLSEC_SIGNATURE.format(id="_" + name),
)
id_attr = "--id-attr:ID", "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"
with tempfile.TemporaryDirectory() as tmp:
    key_pem = os.path.join(tmp, "key.pem")
    tpl = os.path.join(tmp, "template.xml")
    with open(key_pem, "wb") as f:
        f.write(rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with open(tpl, "w") as f:
        f.write(template)
    subprocess.run(["xmlsec1", "--sign", "--privkey-pem", key_pem, *id_attr, "--output", f"{name}.xml", tpl], check=True)
    subprocess.run(["xmlsec1", "--verify", "--pubkey-cert-pem", "rsa.cert.pem", *id_attr, f"{name}.xml"], check=True)
