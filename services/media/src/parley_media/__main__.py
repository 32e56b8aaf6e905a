from parley_media.app import main

main()
