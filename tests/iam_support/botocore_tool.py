"""botocore as the tests' reference client (run with the aws venv's python).

  sign SERVICE OPERATION PARAMS_JSON KEY SECRET [presign]
      prints the request botocore signs for OPERATION (endpoint
      http://127.0.0.1:8773, region us-east-1), as JSON: method, path,
      query, headers (with the Host header its HTTP client sends), body.
      Nothing is sent: the request is taken before it leaves.
  call SERVICE OPERATION PARAMS_JSON KEY SECRET ENDPOINT
      makes the call against ENDPOINT and prints {"result": ...} or
      {"error": {"Code", "Message"}, "status": N}.
  parse  (a JSON list of {service, operation, status, body} on stdin)
      prints what botocore's parser makes of each response (with the
      handlers botocore runs after a call), as a JSON list.

With GUREUM_SIGN_AT=SECONDS (since the epoch) in the environment,
requests are signed as at that time instead of now.
"""

import datetime
import json
import os
import sys
from urllib.parse import urlsplit

import botocore.parsers
import botocore.session
from botocore.awsrequest import AWSResponse

ENDPOINT = "http://127.0.0.1:8773"

if "GUREUM_SIGN_AT" in os.environ:
    import botocore.auth

    _at = datetime.datetime.fromtimestamp(
        int(os.environ["GUREUM_SIGN_AT"]), datetime.timezone.utc
    ).replace(tzinfo=None)
    botocore.auth.get_current_datetime = lambda *_, **__: _at


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **_):
        yield self._body


def _client(service, key, secret, endpoint=ENDPOINT):
    session = botocore.session.get_session()
    return session.create_client(
        service,
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def _raw(method, url, headers, body):
    parts = urlsplit(url)
    headers = [[k, v.decode() if isinstance(v, bytes) else v] for k, v in headers.items()]
    headers.insert(0, ["Host", parts.netloc])
    if isinstance(body, str):
        body = body.encode()
    return {
        "method": method,
        "path": parts.path or "/",
        "query": parts.query,
        "headers": headers,
        "body": (body or b"").decode(),
    }


def sign(service, operation, params, key, secret, presign=False):
    client = _client(service, key, secret)
    if presign:
        url = client.generate_presigned_url(operation, Params=params, ExpiresIn=300)
        # botocore signs it for the operation's HTTP method (POST for the
        # Query APIs): the URL is sent that way, with an empty body.
        name = client.meta.method_to_api_mapping.get(operation, operation)
        method = client.meta.service_model.operation_model(name).http["method"]
        return _raw(method, url, {}, b"")
    captured = []

    def before_send(request, **_):
        captured.append(request)
        # A well-formed empty answer, so that the call ends here.
        name = client.meta.service_model.operation_model(
            client.meta.method_to_api_mapping.get(operation, operation)
        ).name
        xml = f"<{name}Response><ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></{name}Response>"
        return AWSResponse(request.url, 200, {}, _Raw(xml.encode()))

    client.meta.events.register("before-send", before_send)
    try:
        getattr(client, operation)(**params)
    except Exception:  # the empty answer may not satisfy the output shape
        pass
    request = captured[0]
    return _raw(request.method, request.url, request.headers, request.body)


def call(service, operation, params, key, secret, endpoint):
    import botocore.exceptions

    client = _client(service, key, secret, endpoint)
    try:
        result = getattr(client, operation)(**params)
    except botocore.exceptions.ClientError as e:
        return {"error": e.response["Error"], "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}
    result.pop("ResponseMetadata", None)
    return {"result": result}


def parse(service, operation, status, body):
    client = _client(service, "AKIDEXAMPLE", "secret")
    model = client.meta.service_model.operation_model(operation)
    parser = botocore.parsers.create_parser(model.metadata["protocol"])
    response = {"status_code": status, "headers": {}, "body": body}
    parsed = parser.parse(response, model.output_shape)
    parsed.pop("ResponseMetadata", None)
    # The handlers botocore runs after a call (IAM's policy documents are
    # URL-encoded JSON it decodes).
    client.meta.events.emit(
        f"after-call.{model.service_model.endpoint_prefix}.{operation}",
        http_response=None,
        parsed=parsed,
        model=model,
        context={},
    )
    return parsed


def main(argv):
    if argv[1] == "sign":
        service, operation, params, key, secret = argv[2:7]
        out = sign(service, operation, json.loads(params), key, secret, argv[7:8] == ["presign"])
    elif argv[1] == "call":
        service, operation, params, key, secret, endpoint = argv[2:8]
        out = call(service, operation, json.loads(params), key, secret, endpoint)
    else:
        jobs = json.load(sys.stdin)
        out = [
            parse(j["service"], j["operation"], j["status"], j["body"].encode())
            for j in jobs
        ]
    json.dump(out, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv)
