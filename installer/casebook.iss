; Inno Setup script for Casebook (compiled by installer\build_windows.ps1, which passes
; AppVersion, SourceDir = the PyInstaller one-folder bundle, IconFile and OutputDir).
; Installs per machine (Program Files) or, without admin rights, per user; the library and the
; settings live in the user's profile and are kept by upgrades and by the uninstaller.
#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\build\installer\dist\casebook"
#endif
#ifndef IconFile
  #define IconFile "..\build\installer\icons\casebook.ico"
#endif
#ifndef OutputDir
  #define OutputDir "..\build\installer"
#endif

[Setup]
AppId={{6C3B1F0E-5A7D-4E2B-9C1A-CA5EB00C0001}
AppName=Casebook
AppVersion={#AppVersion}
AppVerName=Casebook {#AppVersion}
AppPublisher=Casebook developers
AppComments=DICOM viewer with offline similar-case search over the institution's own archive
DefaultDirName={autopf}\Casebook
DefaultGroupName=Casebook
DisableProgramGroupPage=yes
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=casebook-{#AppVersion}-setup
SetupIconFile={#IconFile}
UninstallDisplayIcon={app}\casebook.ico
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[InstallDelete]
; an upgrade replaces the program folder as a whole: no stale libraries of the old version
Type: filesandordirs; Name: "{app}\_internal"

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Casebook"; Filename: "{app}\casebookw.exe"; IconFilename: "{app}\casebook.ico"; Comment: "Open the Casebook reading window"
Name: "{group}\Casebook self-test"; Filename: "{app}\casebook.exe"; Parameters: "--self-test"; IconFilename: "{app}\casebook.ico"; Comment: "Check this installation"
Name: "{group}\Uninstall Casebook"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Casebook"; Filename: "{app}\casebookw.exe"; IconFilename: "{app}\casebook.ico"; Tasks: desktopicon

[Run]
Filename: "{app}\casebookw.exe"; Description: "{cm:LaunchProgram,Casebook}"; Flags: nowait postinstall skipifsilent
