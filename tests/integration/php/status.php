<?php
http_response_code(intval($_GET['code'] ?? 200));
header('Content-Type: text/plain');
header('Set-Cookie: a=1');
header('Set-Cookie: b=2', false);
echo "status body\n";
