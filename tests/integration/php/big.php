<?php
// 5 MiB of deterministic text: md5 of 0, 1, 2, ... (32 bytes each).
header('Content-Type: text/plain');
$n = intval($_GET['mib'] ?? 5) * 1024 * 1024 / 32;
for ($i = 0; $i < $n; $i++) echo md5((string)$i);
