<?php
// The demo's PHP app, served by php-fpm through Mongrel2 and m2bridge.
header('Content-Type: text/plain; charset=utf-8');
echo "Hello from PHP ", PHP_VERSION, " behind Mongrel2, through m2bridge.\n\n";
foreach (['REQUEST_METHOD', 'REQUEST_URI', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING', 'SERVER_SOFTWARE',
          'X_MONGREL2_CONN_ID'] as $name) {
    printf("%-20s %s\n", $name, $_SERVER[$name] ?? '');
}
echo "\nTry the long-poll chat: curl localhost:6767/chat/wait.php in one shell,\n";
echo "then curl -d 'hi all' localhost:6767/chat/say.php in another.\n";
